"""The review application: studies, drafts, report revisions, RADPEER reviews, labels."""
