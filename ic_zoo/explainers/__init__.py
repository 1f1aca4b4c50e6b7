"""Built-in explainers register themselves in their modules; see ic_zoo.discovery."""
