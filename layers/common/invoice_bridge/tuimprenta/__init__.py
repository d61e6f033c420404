"""tuimprenta.digital: fiscal invoices issued in batches."""
