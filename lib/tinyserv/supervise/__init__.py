"""The supervisor daemon and what talks to it: process ownership, its control socket, cron, services, handover."""
