"""Keep LiteLLM offline when a test imports it: without this, importing litellm fetches the model
cost map from GitHub (and waits on retries when there is no network)."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
