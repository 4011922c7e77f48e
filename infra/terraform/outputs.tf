output "gateway_instance_ids" {
  value = aws_instance.gateway[*].id
}

output "database_endpoint" {
  value = aws_db_instance.securegate.endpoint
}
