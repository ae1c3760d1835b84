"""The admin CLI (`spendpipe ...`): run services, query spend, manage topics, the local demo."""
