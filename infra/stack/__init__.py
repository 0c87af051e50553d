"""Stack file -> frozen StackConfig: reading, validation, names. Pure: no Pulumi, no AWS SDK."""
