"""The audience layer: normalisation, accounts and contacts, imports and exports, lists, segments, domain sets."""
