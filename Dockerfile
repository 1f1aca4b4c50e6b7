# Interactive Classification: the app as one replica (see README, "Deploy for many participants").
#   docker build -t ic-zoo .                       # CPU wheels: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
#   docker run -p 7860:7860 ic-zoo                 # http://localhost:7860, GET /healthz
# The entrypoint is `python app.py`; everything it reads comes from the environment (listed below).
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    IC_ZOO_CACHE=/home/app/.cache/ic_zoo \
    HF_HOME=/home/app/.cache/huggingface

# The environment the app reads (all optional; a public study needs its two secrets):
#   IC_ZOO_MODELS        comma-separated default models (else the zoo of each image's domain)
#   IC_ZOO_DEVICE        cpu, cuda, cuda:1 ... (else cuda when there is one)
#   IC_ZOO_PLUGINS_DIR   folder of plugin .py files (else /app/plugins)
#   IC_ZOO_STUDY         a study file: run study mode   IC_ZOO_STUDY_DB  postgresql://user:pass@host/db
#   IC_ZOO_STUDY_SECRET, IC_ZOO_BROWSER_SECRET, IC_ZOO_ADMIN_PASSWORD   the study's secrets (from a Secret)
#   IC_ZOO_CONCURRENCY   model slots per replica (2)   IC_ZOO_DRAIN_S  seconds to finish events on SIGTERM (20)

WORKDIR /app
COPY requirements.txt requirements-contrib.txt ./
RUN if [ -n "$TORCH_INDEX" ]; then \
        pip install --index-url "$TORCH_INDEX" "$(grep '^torch==' requirements.txt)" "$(grep '^torchvision==' requirements.txt)"; \
    fi \
    && pip install -r requirements.txt \
    && pip uninstall -y opencv-python-headless \
    && pip install --no-deps -r requirements-contrib.txt \
    && groupadd --gid 10001 app \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin app

COPY --chown=10001:10001 . .
USER 10001:10001
EXPOSE 7860
STOPSIGNAL SIGTERM
# /healthz took up to 1.6 s on 2 busy cores (benchmarks/health_latency.py); the check also starts a Python
HEALTHCHECK --interval=10s --timeout=10s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=8)"]
CMD ["python", "app.py"]
