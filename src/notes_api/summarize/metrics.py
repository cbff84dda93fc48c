from prometheus_client import Counter

MODEL_CALLS = Counter("summarize_model_calls_total", "Model calls answered with a summary")
MODEL_TOKENS = Counter(
    "summarize_model_tokens_total", "Tokens the model server reported using", ["type"]
)
