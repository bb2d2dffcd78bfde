"""Indexes: stores, the indexer and its pipeline, Ray, evaluation."""
