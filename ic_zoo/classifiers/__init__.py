"""Built-in classifiers register themselves in their modules; see ic_zoo.discovery."""
