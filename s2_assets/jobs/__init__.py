"""sen2chain job files and what they become: jobs, schedules, sensors."""
