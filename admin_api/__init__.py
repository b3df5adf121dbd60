"""REST routes for the CRM screens, their RBAC, problem+json errors and the OpenAPI document."""
