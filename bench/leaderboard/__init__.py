"""Result records -> Markdown / HTML / CSV tables and plots (one deterministic generator)."""
