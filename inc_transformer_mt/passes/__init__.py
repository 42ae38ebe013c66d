"""Post-tuning GraphDef -> GraphDef passes. Each returns a new graph and a record of what it changed."""
