"""Reading the admin's files: the policy file and xl domain config files."""
