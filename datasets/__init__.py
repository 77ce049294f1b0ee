"""Dataset cards, sources and long-tail builders."""
