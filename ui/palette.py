"""Tailwind classes the dashboard's parts share, so a shade is changed in one place."""

# Secondary text: captions, timestamps, hints (readable in both themes).
MUTED = "text-slate-500 dark:text-slate-400"
