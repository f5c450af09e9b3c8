"""Task packages: one folder per research method, registered in mlkit.core.registry.TASKS."""
