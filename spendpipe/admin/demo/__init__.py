"""`spendpipe demo`: the whole pipeline on one machine with gentle LiteLLM traffic (`make run`)."""
