"""Reference data: sites, vehicles, zones, routes, areas, departments and the calendar; its store in Redis."""
