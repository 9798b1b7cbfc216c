"""Who may do what: tokens and roles, console sessions, the identity of a request, the audit trail."""
