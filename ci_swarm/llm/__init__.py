"""The Claude adapters: one session per run (client, shared limiter, usage and budget), the planner, prices.

Only this package, ``ci_swarm.agents.claude`` and ``ci_swarm.testing`` import ``anthropic``.
"""

from ci_swarm.llm.session import BudgetStop, LLMSession, LLMSettings

__all__ = ["BudgetStop", "LLMSession", "LLMSettings"]
