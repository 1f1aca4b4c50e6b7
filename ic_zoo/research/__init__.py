"""The research layer: benchmarks and research pipelines, each registered as a ``python -m ic_zoo``
command plugin (``bench``, ``latency``, ``explain-bench``, ``vebi``).

``bench``: the edit-cost table; ``latency``: the explainer latency table; ``explain_bench``: which map
tells the truth on Flower2D (the region protocol) and ``explain_parts`` (FunnyBirds' part-level protocol);
``vebi_cli``: fitting and inspecting VEBI's relevance files; ``outputs``: what every command does with its
result (the table printed, the JSON and the README's markdown written). Nothing below this layer imports it."""
