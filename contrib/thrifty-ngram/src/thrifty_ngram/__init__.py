"""Prompt-lookup n-gram draft model: the smallest complete thrifty plugin."""
