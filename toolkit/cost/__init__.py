"""What a table costs on DynamoDB: item sizes, capacity units, prices, the monthly model and `loanbook cost`."""
