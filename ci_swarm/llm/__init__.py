"""The Claude adapters: ``session`` (one per run: client, shared limiter, usage and budget), ``planner``,
``limiter``, ``pricing``, ``accounting``, ``prompts``. Import the modules directly (this package stays light:
the fake API imports ``prompts`` without loading the SDK).

Only this package, ``ci_swarm.agents.claude`` and ``ci_swarm.testing`` import ``anthropic``.
"""
