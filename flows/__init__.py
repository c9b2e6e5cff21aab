"""Prefect flows: each reads as the stages of one job and holds no business logic."""
