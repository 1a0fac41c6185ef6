"""Pure cleaning functions: normalisation, sentence splitting, document filters."""
