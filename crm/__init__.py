"""Shared domain and storage: users, roles and auth now; audiences, suppressions, leads as their issues land."""
