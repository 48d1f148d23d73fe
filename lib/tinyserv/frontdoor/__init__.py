"""The front door: nginx's config and process, the router the supervisor keeps, domains, certificates."""
