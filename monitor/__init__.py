"""callwatch package."""
