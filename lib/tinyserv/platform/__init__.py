"""The operating system as apps meet it: processes, root mode's users and privileges, an app's environment."""
