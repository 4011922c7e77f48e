# SecureGate gateway infrastructure on AWS: EC2 instances with Nitro Enclaves enabled behind an
# ALB, and a PostgreSQL (RDS) database shared by every host instance. Shareholders are run by
# other operators in other accounts and are not part of this module.
#
# Validate with `terraform fmt -check && terraform init -backend=false && terraform validate`
# (terraform is not in the package registries this project's CI can reach; run it by hand).

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

resource "aws_security_group" "gateway" {
  name        = "securegate-gateway"
  description = "SecureGate hosts: HTTP from the load balancer only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "gateway from the ALB"
    from_port       = 8080
    to_port         = 8080
    protocol        = "tcp"
    security_groups = [var.alb_security_group_id]
  }

  egress {
    description = "HTTPS to upstream APIs and shareholders (the vsock-proxy allow-list narrows it)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description     = "PostgreSQL"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [aws_security_group.database.id]
  }
}

resource "aws_security_group" "database" {
  name        = "securegate-database"
  description = "PostgreSQL for SecureGate hosts"
  vpc_id      = var.vpc_id
}

resource "aws_security_group_rule" "database_from_gateway" {
  type                     = "ingress"
  from_port                = 5432
  to_port                  = 5432
  protocol                 = "tcp"
  security_group_id        = aws_security_group.database.id
  source_security_group_id = aws_security_group.gateway.id
}

resource "aws_db_subnet_group" "securegate" {
  name       = "securegate"
  subnet_ids = var.private_subnet_ids
}

resource "aws_db_instance" "securegate" {
  identifier                 = "securegate"
  engine                     = "postgres"
  engine_version             = "15"
  instance_class             = var.db_instance_class
  allocated_storage          = 50
  db_name                    = "securegate"
  username                   = "securegate"
  manage_master_user_password = true
  db_subnet_group_name       = aws_db_subnet_group.securegate.name
  vpc_security_group_ids     = [aws_security_group.database.id]
  storage_encrypted          = true
  backup_retention_period    = 7
  deletion_protection        = true
  skip_final_snapshot        = false
  final_snapshot_identifier  = "securegate-final"
}

resource "aws_instance" "gateway" {
  count                  = var.instance_count
  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = element(var.private_subnet_ids, count.index)
  vpc_security_group_ids = [aws_security_group.gateway.id]

  enclave_options {
    enabled = true
  }

  metadata_options {
    http_tokens = "required"
  }

  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    release = var.release
  })

  tags = {
    Name = "securegate-gateway-${count.index}"
  }
}
