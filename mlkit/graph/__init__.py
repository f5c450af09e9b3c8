"""Graph IO shared by the graph tasks (gbp, framelet): one Graph container, one set of loaders."""
