"""Core domain: the rules of AgentDeck, called by both the dashboard (ui/) and the API (api/)."""
