"""Built-in inpainters register themselves in their modules; see ic_zoo.discovery."""
