"""Labels of the runtime that pages and the API show without importing MetaGPT."""

DEMO_MODEL_LABEL = "demo model"
