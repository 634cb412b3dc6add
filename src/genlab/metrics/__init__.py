"""Sample-quality and likelihood metrics that work offline."""
