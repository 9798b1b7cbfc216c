"""What people read: alerts in their language (Chinese first, English second) and the city's local time."""
