"""What users run: the CLI, the server, the search page, the MCP server, chat answers and contact sheets."""
