module oauth2-token-operator.invalid/probe

go 1.26
