"""A drop-in for LiteLLM's `BudgetManager`, backed by the pipeline, so code written for it is
correct across many processes:

    # from litellm import BudgetManager
    from spendpipe.budget_manager import BudgetManager

    budget_manager = BudgetManager(project_name="my-app")
    if not budget_manager.is_valid_user(user):
        budget_manager.create_budget(total_budget=10, user=user, duration="monthly")
    if budget_manager.get_current_cost(user=user) <= budget_manager.get_total_budget(user):
        response = litellm.completion(...)
        budget_manager.update_cost(completion_obj=response, user=user)

Every method of LiteLLM's (1.110) takes the same arguments and returns the same shapes
(`update_cost` and `reset_cost` return `{"user": <user_dict entry>}`, `create_budget` the entry,
`get_model_cost` 0 before any spend) and raises the same exceptions (KeyError for a user without
a budget, ValueError for a bad duration or a call without a response or texts). Each works from
sync code and inside a running event loop (no `asyncio.run`: Kafka I/O runs on background
loops, budget writes on a worker thread), and has an async twin (`aget_current_cost`, ...).

Where things live. Budgets go to the signed `spend.budgets` topic (scope `user:<label>`), read
back by a follower of the topic: lookups read memory. Costs are published as spend events and
read from `spend_totals`, a user's confirmed totals reused for `totals_max_age_s` (1 s).

Read-your-writes (`ledger.py`). `update_cost` puts the event in this process's ledger before
sending it, and notes where Kafka put it (partition, offset). A read adds to the confirmed
totals the ledger's events the totals do not include: an event is included when its offset is
at or below its partition's watermark, read in the same query (one snapshot) as the totals,
and the aggregator writes a batch's totals and watermark in one insert. A newer snapshot drops
the events it includes from the ledger. So the writer sees its spend at once, and each event
counts once, before and after the pipeline confirms it. An event Kafka did not take goes to
the disk spool; its position is then read from `events` (written after its totals). Limits:
an event the aggregator counts before Kafka's acknowledgement reaches `update_cost` (never seen:
a flush takes longer than an acknowledgement), or, for a spooled event, between the aggregator's
totals and events inserts, reads twice for that moment. Other processes' spend shows once the
pipeline counted it.

Resets (`SpendReset` on the budget). `reset_cost`, and `create_budget` (which starts the
user's spend afresh, as LiteLLM's does, for an existing user too), write a reset marker on the
budget: the minute of the reset and what that minute held (this process's unconfirmed events
included). Reads, and the enforcer's caps (`max_budget`, `budget_limits`), count the minutes
from the marker's on, less that offset. Nothing is deleted: `spendpipe spend` still shows the
history. Another process's spend recorded just before the reset in its minute and not yet
counted counts after it; until this process's unconfirmed events of that minute are counted,
the enforcer reads the user's spend as zero (the offset holds them). The enforcer applies the
marker to every cap of the budget (`max_budget`, `budget_limits`, `model_max_budget`,
`soft_budget`).

Windows. spendpipe's calendar windows, in the deployment's zone (UTC by default), not LiteLLM's
rolling days from `created_at`: `daily` resets at midnight, `weekly` on its first day (Sunday by
default), `monthly` on the 1st, `yearly` every 365 days aligned to the epoch. LiteLLM's reset
only when `reset_on_duration` runs, 1, 7, 28 or 365 days (its DAYS_IN_A_* constants) after
`last_updated_at`, the budget's creation then each reset.
`reset_on_duration` and `update_budget_all_users` still do that rolling reset from
`user_dict[user]["last_updated_at"]` (a `reset_cost` once `duration` days passed) on top.

`user_dict` is a local view, refreshed by each call that names a user (`load_data` for all;
unlike LiteLLM's, the constructor does no I/O, so it starts empty); editing it does not change a
budget, except that `reset_on_duration` reads `last_updated_at` from it, as LiteLLM's does.

Use `update_cost` or the gateway plugin for a call, not both: each counts the call once.
Settings come from the environment (`SPENDPIPE_*`), or pass `settings=`.
"""

from spendpipe.budget_manager.manager import BudgetManager, BudgetManagerSettings

__all__ = ["BudgetManager", "BudgetManagerSettings"]
