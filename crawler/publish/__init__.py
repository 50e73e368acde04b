"""The archive published for others: a Hexo site's posts, Atom and JSON Feed exports."""
