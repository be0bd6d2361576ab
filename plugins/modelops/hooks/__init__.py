"""One hook per external system."""
