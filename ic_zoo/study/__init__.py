"""Study mode: a study definition (YAML/TOML), a log that loses nothing (SQLite or PostgreSQL via
SQLAlchemy), and the researcher's side (export, replay, progress).

    from ic_zoo.study import load_study, StudyStore, engine_for
    study = load_study("examples/study/flower_study.yaml")
    store = StudyStore(engine_for("sqlite:///study.sqlite"), study)

The Gradio UI is ``ic_zoo.app.study.ui.build_study_demo`` (``python app.py --study study.yaml``); the CLI is
``python -m ic_zoo study export|replay|progress|links`` (``links`` issues signed participant links,
see ``ic_zoo.study.security``).
"""
from .db import SCHEMA_VERSION, StudyStore, engine_for, migrate, schema_version  # noqa: F401
from .definition import Study, StudyError, Task, counterbalance, load_study, valid_participant, williams_square  # noqa: F401
