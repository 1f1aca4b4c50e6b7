"""Study mode's pages (``python app.py --study study.yaml``): consent, the tasks, the end page and the
researcher's admin page, on the same platform as the main app (``ic_zoo.app``). The study itself (its
definition, the log, export, replay and analysis) is ``ic_zoo.study``."""
