"""The task catalogue, grouped by domain; each task declares its policies."""
