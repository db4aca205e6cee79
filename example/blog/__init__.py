"""The example blog: authors, posts, comments and tags, cached with freshcache."""
