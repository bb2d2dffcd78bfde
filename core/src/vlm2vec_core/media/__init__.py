"""Media in: images, PDF pages and video clips, decoded (in worker processes where untrusted), fitted, as items."""
