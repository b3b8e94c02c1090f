"""The actors on Ray and how they reach each other: actor classes, clients, shards, node aggregators."""
