"""How the pages say a moment or a wait in words ("3 minutes ago", "in 2 hours")."""

from __future__ import annotations

from datetime import datetime


def time_ago(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{seconds} seconds ago"
    minutes = seconds // 60
    if minutes < 60:
        return "1 minute ago" if minutes == 1 else f"{minutes} minutes ago"
    hours = minutes // 60
    if hours < 48:
        return "1 hour ago" if hours == 1 else f"{hours} hours ago"
    return f"{hours // 24} days ago"


def time_left(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((moment - now).total_seconds()))
    if seconds < 60:
        return "in less than a minute"
    minutes = seconds // 60
    if minutes < 120:
        return "in 1 minute" if minutes == 1 else f"in {minutes} minutes"
    hours = minutes // 60
    return f"in {hours} hours" if hours < 48 else f"in {hours // 24} days"


def retry_text(seconds: int) -> str:
    minutes = (seconds + 59) // 60
    return "in a minute" if minutes <= 1 else f"in {minutes} minutes"
