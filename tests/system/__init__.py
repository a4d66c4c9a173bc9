"""The system tier: real server processes, time-shaped outages, load, browser journeys, examples."""
