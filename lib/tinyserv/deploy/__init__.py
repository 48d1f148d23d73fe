"""A push: the pre-receive hook, the build, the boot check, the rollout of a release."""
